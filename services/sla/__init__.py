"""sla: working-day deadlines (clocks), their timers, warnings and breaches."""
