package policy

// input.now is in the configured time zone (Options.Location, config
// policy.time_zone): the zone database is linked in, because the shipped
// container image (distroless) has none.
import _ "time/tzdata"
