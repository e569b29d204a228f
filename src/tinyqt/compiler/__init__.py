"""The training compiler: model + update scheme + budgets -> a static Plan
(step list with compile-time autodiff, and one arena offset per tensor)."""
from .plan import BudgetExceededError, Plan, compile, parse_bytes
from .training_graph import body_convs, build_training_graph

__all__ = ["compile", "Plan", "BudgetExceededError", "parse_bytes", "body_convs", "build_training_graph"]
