"""`mauto lint`: every mistake mauto can catch before review, at file:line:col."""
