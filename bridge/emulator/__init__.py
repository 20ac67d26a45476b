"""An Open Dental stand-in (Subscriptions API, a simulated office): the other side of the wire."""
