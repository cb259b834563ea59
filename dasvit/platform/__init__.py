"""The dasvit platform: Ray Train search trials, a Ray Tune + Optuna sweep, MLflow tracking, parallel retraining.

Kept apart from the ``dasvit`` search core, which imports neither Ray nor MLflow.
"""
