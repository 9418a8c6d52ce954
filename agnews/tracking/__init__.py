"""Live experiment tracking (`logger=tensorboard` or `logger=mlflow`): what a run reports as it goes, so a
sweep can be watched and compared in a tracking UI. results.json stays the record; tracking only mirrors
it, and a tracking failure never ends or loses a run.

- facts: what a run reports (`RunFacts`) under metric names both backends share
- tracker: the `Tracker` interface, and `Tracking`, which calls a backend safely and times it
- tensorboard_logger, mlflow_logger: the two backends (their packages are optional extras)
- callback: the Hydra callback that checks the extra is installed and prepares a shared MLflow store
  before any job starts
"""
