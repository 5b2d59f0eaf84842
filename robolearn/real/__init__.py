"""Real-robot layer: Robot drivers, SafetyLayer, ControlLoop, recorder, teleop (DESIGN.md)."""
