//! krust-core (under construction).
