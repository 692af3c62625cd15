// Command demo is a tiny HTTP backend for trying lb out: it answers every
// request with its own name, so that requests sent through lb show which
// server took them. `make run` starts two of them.
//
//	go run ./internal/demo -name s1 -listen 127.0.0.1:9001
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	name := flag.String("name", "demo", "server name to answer with")
	addr := flag.String("listen", "127.0.0.1:9001", "address to listen on")
	flag.Parse()

	srv := &http.Server{
		Addr:              *addr,
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s (%s): %s %s\n", *name, *addr, r.Method, r.URL.Path)
		}),
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go shutdownOnSignal(ctx, srv)
	log.Printf("demo backend %s listening on %s", *name, *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Print(err)
		os.Exit(1)
	}
}

// shutdownOnSignal stops the server when ctx is done.
func shutdownOnSignal(ctx context.Context, srv *http.Server) {
	<-ctx.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}
