// Command etcd is the upstream etcd server at the version that
// k8s.io/kubernetes pins (go.etcd.io/etcd/server/v3 in go.sum). It mirrors
// go.etcd.io/etcd/server/v3/main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
