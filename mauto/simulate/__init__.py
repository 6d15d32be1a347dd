"""`mauto simulate`: the workflows on a virtual clock, over the sample data (see `run.py`)."""
from __future__ import annotations

from mauto.simulate.result import Funnel, SimulationResult
from mauto.simulate.run import Simulation, select_workflows, simulate
from mauto.simulate.samples import DEFAULT_SAMPLES, EVENT_KEYS, Samples, load_contacts, load_events, load_mapping

__all__ = ["DEFAULT_SAMPLES", "EVENT_KEYS", "Funnel", "Samples", "Simulation", "SimulationResult", "load_contacts",
           "load_events", "load_mapping", "select_workflows", "simulate"]
