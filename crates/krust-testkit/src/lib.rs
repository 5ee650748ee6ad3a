//! krust-testkit (under construction).
