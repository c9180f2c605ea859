// Package deploy holds the examples' container and Kubernetes files: a
// multi-stage Dockerfile per service (<service>/Dockerfile, built from the
// repository root) and, under k8s/, a Deployment, Service and
// HorizontalPodAutoscaler for ingest, dispatch and index. Its test parses
// them and checks they agree with each other and with what the services
// serve.
package deploy
