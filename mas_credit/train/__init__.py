"""Training: per-agent policy updates from any estimator's advantages (trainer), the
clipped policy-gradient loss (loss), and the run summary (summary)."""
