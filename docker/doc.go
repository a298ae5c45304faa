// Package docker holds no code: its tests check the deployment files
// (Dockerfile, .dockerignore, docker-compose.yml, the Prometheus and Grafana
// provisioning under docker/, the CI workflow and the linter configuration)
// without Docker, so that a broken file fails `go test ./...`.
package docker
