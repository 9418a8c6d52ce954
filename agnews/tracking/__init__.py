"""Live experiment tracking (`logger=tensorboard`, `logger=mlflow` or `logger=wandb`): what a run reports as it
goes, so a sweep can be watched and compared in a tracking UI. results.json stays the record; tracking only mirrors
it, and a tracking failure never ends or loses a run.

- facts: what a run reports (`RunFacts`) under metric names every backend shares
- tracker: the `Tracker` interface, and `Tracking`, which calls a backend safely and times it
- tensorboard_logger, mlflow_logger, wandb_logger: the backends (their packages are optional extras)

The launching command checks a logger's extra and prepares a sweep's shared MLflow store before any job
starts (agnews.sweep.tracking); nothing here knows Hydra.
"""
