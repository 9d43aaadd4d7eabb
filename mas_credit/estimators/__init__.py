"""Credit estimators. The shared Shapley math lives in `mas_credit.estimators.shapley`."""
