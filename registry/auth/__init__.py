"""Who is calling (credentials), what they may do (policy), and the Docker token flow."""
