"""`registry import` and `registry export`: moving repositories in from a CNCF Distribution (registry:2)
storage root or an OCI image layout, and out to an OCI image layout.

A client of the content layer: every import goes through `LocalContent` as a push would (its checks,
events and quotas), never straight into the tables. docs/migrating.md is the user guide.
"""
