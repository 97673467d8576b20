"""What a repository holds, behind one interface the API handlers call (local now, mirrored later)."""
