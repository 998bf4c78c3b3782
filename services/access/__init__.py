"""access: tenants' NATS credentials, issued at onboarding and revoked at offboarding."""
