// Kubeless's Go example, unchanged: it answers the request's body.
package kubeless

import (
	"github.com/kubeless/kubeless/pkg/functions"
)

// Handler sample function with data
func Handler(event functions.Event, context functions.Context) (string, error) {
	return event.Data, nil
}
