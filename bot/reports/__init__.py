"""Reports for admins, rendered on the server: the spending chart."""
