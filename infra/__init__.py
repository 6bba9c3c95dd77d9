"""The tiergate CDK app: stage config, constructs and stacks (see app.py)."""
