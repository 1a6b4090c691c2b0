"""The web console (`fedlink console serve`): operators watch runs and judge
linkage quality, privacy officers check who saw what and whether the log
verifies. It runs beside the coordinator and reads it only over gRPC, with its
own operator and officer certificates and one of the console role (source.py);
people sign in with their own certificate from the project's PKI (auth.py) or
with the site's OpenID Connect provider (oidc.py); every page they open is an
audit event recorded through the coordinator (RecordView). See docs/console.md."""
