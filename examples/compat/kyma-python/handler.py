# A Kyma Serverless Python function: main(event, context), reading the JSON body from event["data"]
# and the raw request through event["extensions"]["request"].
def main(event, context):
    data = event["data"] or {}
    request = event["extensions"]["request"]
    return {"greeting": "hello %s" % data.get("name", "world"), "method": request.method}
