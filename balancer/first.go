package balancer

// first picks the first server, in configuration order, that may take the
// connection. With maxconn set, servers fill up one after the other, so the
// later ones can be scaled down while idle.
type first struct {
	servers []*Server
}

func newFirst(servers []*Server) *first { return &first{servers: servers} }

// Pick returns the first server that r need not skip.
func (f *first) Pick(r *Request) *Server { return scan(f.servers, 0, r) }
