// The {{name}} function: Kubeless's Go contract. Deploy it with `funcd deploy`; it is compiled at deploy.
package kubeless

import (
	"encoding/json"
	"fmt"

	"github.com/kubeless/kubeless/pkg/functions"
)

// Handler answers a greeting. event.Data is the request body as it was sent; set headers or a status
// through event.Extensions.Response.
func Handler(event functions.Event, context functions.Context) (string, error) {
	var body struct {
		Name string `json:"name"`
	}
	name := "world"
	if json.Unmarshal([]byte(event.Data), &body) == nil && body.Name != "" {
		name = body.Name
	}
	fmt.Printf("greeting %s\n", name) // tagged with the request id in the function's logs
	return fmt.Sprintf("Hello, %s! (from %s)", name, context.FunctionName), nil
}
