"""What runs, read back from the store: `mauto stats` (a workflow's figures per step and per split variant),
`mauto inspect` (one contact's journey), `mauto tasks`, and `mauto report` (one HTML file)."""
