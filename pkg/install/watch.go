// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package install

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watch resyncs our conflist whenever a config file in o.ConfDir changes,
// until ctx ends. Bursts are debounced: another installer writing its
// primary in several steps causes one resync after it went quiet. last is
// the state the install reached, so that only news is logged.
func (o *Options) watch(ctx context.Context, last State, onState func(State)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(o.ConfDir); err != nil {
		return fmt.Errorf("watching %s: %w", o.ConfDir, err)
	}
	// A change between the first sync and the watch being set up would go
	// unseen: sync once more now that it is.
	o.resync(&last, onState)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watcher closed")
			}
			if o.relevant(ev) {
				timer.Reset(o.Debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watcher closed")
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				return fmt.Errorf("watching %s: %w", o.ConfDir, err)
			}
			timer.Reset(o.Debounce) // events were lost: look again
		case <-timer.C:
			o.resync(&last, onState)
		}
	}
}

// relevant tells whether ev may change what our conflist should be. Our
// own writes (temp files, and creating or writing our conflist) are not;
// our conflist removed or renamed by someone else is, so it comes back.
func (o *Options) relevant(ev fsnotify.Event) bool {
	base := filepath.Base(ev.Name)
	if isTemp(base, o.ConfName) {
		return false
	}
	if base == o.ConfName {
		return ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)
	}
	return slices.Contains(ConfExtensions, filepath.Ext(base))
}

// resync logs a failed sync and goes on: the file it tripped on (read
// while being replaced, say) changes again, and the next event retries.
// A state is logged when it is news: a write, or another state than last.
func (o *Options) resync(last *State, onState func(State)) {
	st, err := o.sync()
	if err != nil {
		o.Logf("sync failed, retrying on the next change: %v", err)
		return
	}
	if st.Written || st != *last {
		o.Logf("%s", st)
	}
	*last = st
	onState(st)
}
