"""notify: delivers complaint.routed / sla.warning / sla.breached events to subscribed
webhooks, signed per the Standard Webhooks spec, with retries and a dead-letter state."""
