import os


# An OpenFaaS python3-http handler, unchanged.
def handle(event, context):
    body = event.body.decode("utf-8") if event.body else "nobody"
    return {
        "statusCode": 201,
        "body": {"echo": body + os.environ.get("SUFFIX", ""), "method": event.method},
    }
