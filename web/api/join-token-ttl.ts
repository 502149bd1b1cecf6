// Join tokens are only signed by the routes of the objects they admit to (meetings, service calls,
// live cameras), each after its own access check; there is no route that names a room directly.

/** Lifetime of a join token; pages fetch a fresh one to rejoin. */
export const JOIN_TOKEN_TTL_SECONDS = 600;
