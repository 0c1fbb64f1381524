//! API client against scripted local servers. OWNER: API-client helper.
