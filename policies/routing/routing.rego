# Routing by policy (not one of the nine access policies): at the route
# point, after the auth decision, route_backend names the backend (from
# imapwarden's configuration) for the user: data.routing.users by login
# name first, else data.routing.groups by the first of the user's groups
# (sorted) that is listed. Without either, imapwarden's configured routes
# apply.
package imapwarden

route_backend := data.routing.users[user]

# users is looked up by the login folded (user: lower-cased), so a key that
# is not lower case would never match: refused at load (data_errors).
data_errors contains sprintf("routing.users: %q is not lower case (write %q): logins are compared in lower case", [name, lower(name)]) if {
	some name, _ in data.routing.users
	name != lower(name)
}

route_backend := b if {
	not data.routing.users[user]
	routes := [r | some g in input.session.groups; r := data.routing.groups[g]]
	b := routes[0]
}
