"""A lint finding: the project's one problem type (mauto/problem.py), under the name the rules import."""
from __future__ import annotations

from mauto.problem import ERROR, WARNING, Problem

__all__ = ["ERROR", "WARNING", "Problem"]
