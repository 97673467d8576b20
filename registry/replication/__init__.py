"""Replication: rules that keep repositories in step with another registry, pulling or pushing."""
