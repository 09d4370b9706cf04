"""Placement: pure, deterministic decisions about where replicas live."""

from hacoord.placement.assign import place_resource, rendezvous, replacements_for

__all__ = ["place_resource", "rendezvous", "replacements_for"]
