"""Tests of registry/events/ below HTTP: the audit purge and its schedule."""
