//! Simulator behaviour over real HTTP. OWNER: simulator helper.
