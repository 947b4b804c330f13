// An AWS Lambda function (Function URL / HTTP API payload 2.0), deployed unchanged:
// handler "index.handler" is detected as Lambda style.
export const handler = async (event, context) => {
  const name = event.queryStringParameters?.name ?? "world";
  return {
    statusCode: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ hello: name, path: event.rawPath, requestId: context.awsRequestId }),
  };
};
