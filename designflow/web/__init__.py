"""`designflow web`: the seller's upload page and upload API (a front end, like the CLI)."""
