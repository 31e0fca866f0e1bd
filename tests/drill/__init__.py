"""What the key-compromise drill needs on both targets (issue 22 item 4): continuous traffic
through the enterprise preset's workloads (:mod:`drill.load`) and a go-spiffe peer that
says whether it accepts an SVID (:mod:`drill.gospiffe`); and, for rotation under load
through the sidecars (issue 21 item 5, local target), traffic on every sidecar path with
the certificates each one used (:mod:`drill.sidecar_load`); and faults that must fire their
alert and resolve when undone, with the traffic GatewayErrors needs (issue 24 item 4,
:mod:`drill.alerts`)."""
