"""What an operator deploys: the image, the compose file (checked offline, no Docker engine)."""
