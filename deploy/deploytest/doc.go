// Package deploytest checks the deployment artifacts under deploy/: the
// container image definition, the systemd unit, the Debian package, the Helm
// chart, the Grafana dashboard and the example configurations. It has only
// tests.
//
// The tests run the real tools where they can: imapwarden validate on every
// shipped configuration, systemd-analyze verify and security on the unit,
// nfpm to build the package and dpkg to install it, helm lint and helm
// template on the chart. A missing tool skips its test, except with CI=true,
// where .ci/install-deploy-tools.sh installs the Debian ones and a missing
// tool fails. Installing the package changes the machine, so that test runs
// only as root and only with CI=true or IMAPWARDEN_DEB_TEST=1.
package deploytest
