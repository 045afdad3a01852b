//! The DHCPv4 engine: a sans-I/O core and the socket shell around it.
