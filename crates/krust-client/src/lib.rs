//! krust-client (under construction).
