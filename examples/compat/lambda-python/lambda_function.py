# An AWS Lambda Python function deployed unchanged (handler "lambda_function.lambda_handler",
# declared with handlerStyle: lambda because the name is not `handler`).
import json


def lambda_handler(event, context):
    params = event.get("queryStringParameters") or {}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"hello": params.get("name", "world"), "path": event["rawPath"],
                            "requestId": context.aws_request_id}),
    }
