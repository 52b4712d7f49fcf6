"""The Pickup directory: .eml files dropped in, claimed, checked by Exchange's rules and submitted."""
