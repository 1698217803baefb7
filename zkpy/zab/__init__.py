"""ZAB roles (leader, follower, observer); empty until the ensemble issue."""
