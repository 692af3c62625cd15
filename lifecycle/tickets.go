package lifecycle

import (
	"context"
	"encoding/json"
	"time"

	"lb/state"
	"lb/tlsconf"
)

// liveTicketKeys names the TLS session ticket keys in state.Doc.Live.
const liveTicketKeys = "tls_ticket_keys"

// ticketCheck is how often a serving generation looks whether its session
// ticket keys are due for rotation.
const ticketCheck = 10 * time.Minute

// setUpTickets gives the TLS frontends their session ticket keys: those of
// ticket_keys_file, else those the old generation handed over, else new
// ones.
func (g *Generation) setUpTickets(saved state.Doc) error {
	if len(g.Proxy.TLS) == 0 {
		return nil
	}
	var handed []tlsconf.TicketKey
	if raw, ok := saved.Live[liveTicketKeys]; ok {
		if err := json.Unmarshal(raw, &handed); err != nil {
			g.Log.Warn().Err(err).Msg("cannot read the TLS session ticket keys the old generation handed over: making new ones")
			handed = nil
		}
	}
	g.tickets = tlsconf.NewTickets(g.Proxy.TLS)
	source, err := g.tickets.Init(g.Proxy.TicketKeys, handed, g.host().Now())
	if err != nil {
		return err
	}
	g.Log.Info().Str("source", source).Int("keys", len(g.tickets.Keys())).Msg("TLS session ticket keys")
	return nil
}

// rotateTickets rotates the session ticket keys as they come due, until
// ctx is done.
func (g *Generation) rotateTickets(ctx context.Context) {
	every(ctx, ticketCheck, func(now time.Time) bool {
		changed, err := g.tickets.Rotate(now)
		if err != nil {
			g.Log.Error().Err(err).Msg("cannot rotate the TLS session ticket keys")
		} else if changed {
			g.Log.Info().Int("keys", len(g.tickets.Keys())).Msg("rotated the TLS session ticket keys")
		}
		return true
	})
}

// liveParts is what only a live generation hands to the next one.
func (g *Generation) liveParts() map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	if keys := g.tickets.Keys(); len(keys) > 0 {
		if raw, err := json.Marshal(keys); err == nil {
			out[liveTicketKeys] = raw
		}
	}
	if g.statsSrv != nil {
		if raw, err := json.Marshal(&g.history); err == nil {
			out[liveHistory] = raw
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
