"""Classification: its task, evaluate, predict and report."""
