// The status page: renders /status.json into the page and refreshes it.
// No library; charts are inline SVG paths.
(function () {
  'use strict';

  function bytes(n) {
    if (n === null || n === undefined) return '–';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var v = Math.abs(n), i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (n < 0 ? '-' : '') + (i === 0 ? v.toFixed(0) : v.toFixed(1)) + ' ' + units[i];
  }

  function secs(s) {
    if (s === null || s === undefined) return '–';
    if (s < 1) return (s * 1000).toFixed(0) + ' ms';
    if (s < 60) return s.toFixed(1) + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.round((s % 3600) / 60) + ' min';
  }

  function num(n) {
    if (n === null || n === undefined) return '–';
    return Number(n).toLocaleString('en-US');
  }

  function rate(n) {
    if (n === null || n === undefined) return '–';
    return (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1)) + ' ev/s';
  }

  // set writes text into every element of the field and keeps the raw
  // value in data-value (what the browser test compares).
  function set(field, text, raw) {
    var els = document.querySelectorAll('[data-f="' + field + '"]');
    for (var i = 0; i < els.length; i++) {
      els[i].textContent = text;
      els[i].setAttribute('data-value', raw === null || raw === undefined ? '' : String(raw));
    }
  }

  function render(d) {
    var r = d.report;
    var verdict = r ? r.verdict : 'ERROR';
    var v = document.getElementById('verdict');
    v.className = 'verdict ' + verdict;
    set('verdict', verdict, verdict);
    document.title = 'outbox-relay · ' + verdict;
    set('version', d.version, d.version);
    set('time', new Date(d.time).toLocaleTimeString(), d.time);
    set('uptime', secs((Date.parse(d.time) - Date.parse(d.started_at)) / 1000), null);

    var stale = document.getElementById('stale');
    stale.hidden = !d.error;
    stale.textContent = d.error ? 'PostgreSQL could not be read: ' + d.error : '';

    var ul = document.getElementById('reasons');
    ul.textContent = '';
    (r ? r.reasons : []).forEach(function (reason) {
      var li = document.createElement('li');
      li.className = reason.split(':')[0];
      li.textContent = reason;
      ul.appendChild(li);
    });

    if (r) renderReport(r);
    renderStreams(r && r.streams ? r.streams : []);
    renderFlush(d);
    renderCharts(d);
    renderSettings(d.settings || []);
  }

  function renderReport(r) {
    set('slot', r.slot, r.slot);
    set('lag_bytes', bytes(r.lag_bytes), r.lag_bytes);
    set('retained_wal_bytes', bytes(r.retained_wal_bytes), r.retained_wal_bytes);
    var limited = r.max_slot_wal_keep_size_bytes >= 0;
    set('max_slot_wal_keep_size_bytes', limited ? bytes(r.max_slot_wal_keep_size_bytes) : 'unlimited', r.max_slot_wal_keep_size_bytes);
    set('wal_status', r.wal_status, r.wal_status);
    set('active', r.active ? 'yes · pid ' + r.active_pid : 'no', r.active);
    var fo = r.failover;
    var foText = !fo ? '–' : fo.ready ? 'yes' : 'no: missing ' + fo.missing;
    set('failover_ready', foText, fo ? fo.ready : null);
    document.querySelector('[data-f="failover_ready"]').classList.toggle('long', foText.length > 24);
    set('backlog_rows', num(r.backlog_rows), r.backlog_rows);
    set('oldest_backlog_age_seconds', r.oldest_backlog_age_seconds === null ? 'empty' : secs(r.oldest_backlog_age_seconds), r.oldest_backlog_age_seconds);
    set('dead_letters', num(r.dead_letters), r.dead_letters);
    document.getElementById('dlnote').hidden = !(r.dead_letters > 0);
    set('clickhouse_reachable', r.clickhouse_reachable ? 'yes' : 'no', r.clickhouse_reachable);
    set('clickhouse_version', r.clickhouse_version || '–', r.clickhouse_version);
    set('clickhouse_rows', num(r.clickhouse_rows), r.clickhouse_rows);
    set('postgres_version', (r.postgres_version || '–').split(' ')[0], r.postgres_version);

    var bar = document.getElementById('walbar');
    var note = document.getElementById('walnote');
    if (limited && r.retained_wal_bytes !== null && r.max_slot_wal_keep_size_bytes > 0) {
      var share = Math.min(1, r.retained_wal_bytes / r.max_slot_wal_keep_size_bytes);
      bar.style.width = (share * 100).toFixed(1) + '%';
      bar.className = share >= 0.8 ? 'crit' : share >= 0.5 ? 'warn' : '';
      note.textContent = (share * 100).toFixed(1) + '% of max_slot_wal_keep_size retained';
    } else {
      bar.style.width = '0';
      note.textContent = 'max_slot_wal_keep_size is unlimited (-1): a stopped relay keeps WAL until the disk is full';
    }
  }

  // el makes an element with text (never HTML: names come from the
  // servers and the configuration) and optional attributes.
  function el(tag, text, attrs) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }

  // renderStreams draws a section per stream: its outbox table, backlog,
  // dead letters and ClickHouse tables with their rows and guarantee. A
  // figure's raw value is in data-value of its data-s element, under the
  // section's data-stream (what the browser test compares).
  function renderStreams(streams) {
    var box = document.getElementById('streams');
    box.textContent = '';
    streams.forEach(function (s) {
      var sec = el('section', null, { 'class': 'card stream', 'data-stream': s.name });
      var h = el('h2', 'Stream ');
      h.appendChild(el('span', s.name));
      sec.appendChild(h);
      var dl = el('dl');
      var row = function (label, field, text, raw) {
        dl.appendChild(el('dt', label));
        dl.appendChild(el('dd', text, { 'data-s': field, 'data-value': raw === null || raw === undefined ? '' : String(raw) }));
      };
      row('outbox', 'outbox', s.outbox, s.outbox);
      row('in publication', 'in_publication', !s.outbox_exists ? 'table missing' : s.in_publication ? 'yes' : 'no', s.in_publication);
      row('rows', 'backlog_rows', num(s.backlog_rows), s.backlog_rows);
      row('oldest row', 'oldest_backlog_age_seconds',
        s.oldest_backlog_age_seconds === null ? 'empty' : secs(s.oldest_backlog_age_seconds), s.oldest_backlog_age_seconds);
      row('dead letters', 'dead_letters', num(s.dead_letters), s.dead_letters);
      row('ClickHouse', 'clickhouse_table', s.clickhouse_table + (s.routed ? ' (routed)' : ''), s.clickhouse_table);
      sec.appendChild(dl);
      if (s.error) sec.appendChild(el('p', s.error, { 'class': 'small err' }));
      var tables = s.tables || [];
      if (tables.length) {
        var table = el('table', null, { 'data-s': 'tables' });
        var body = el('tbody');
        tables.forEach(function (t) {
          var tr = el('tr', null, { 'data-table': t.name });
          tr.appendChild(el('td', t.name));
          tr.appendChild(el('td', t.exists ? num(t.rows) + ' rows' : 'missing', { 'data-s': 'rows', 'data-value': t.rows === null ? '' : String(t.rows) }));
          tr.appendChild(el('td', t.guarantee + (t.error ? ' · ' + t.error : ''), { 'data-s': 'guarantee', 'data-value': t.guarantee }));
          body.appendChild(tr);
        });
        table.appendChild(body);
        sec.appendChild(table);
      }
      box.appendChild(sec);
    });
  }

  function renderFlush(d) {
    var f = d.last_flush;
    if (!f) {
      set('last_flush_age', 'none yet', null);
      set('last_flush_events', '–', null);
      set('last_flush_bytes', '–', null);
      return;
    }
    var age = Math.max(0, (Date.parse(d.time) - Date.parse(f.time)) / 1000);
    set('last_flush_age', secs(age) + ' ago', f.time);
    set('last_flush_events', num(f.events), f.events);
    set('last_flush_bytes', bytes(f.bytes), f.bytes);
  }

  function renderCharts(d) {
    var end = Date.parse(d.time), start = end - d.window_seconds * 1000;
    var s = d.samples || [];
    var last = s.length ? s[s.length - 1] : null;
    var window = Math.round(d.window_seconds / 60) + ' min ago';
    set('rate_window', window, null);
    set('lag_window', window, null);
    set('rate_now', last ? rate(last.events_per_second) : '–', last ? last.events_per_second : null);
    set('lag_now', last && last.lag_seconds !== null ? secs(last.lag_seconds) : '–', last ? last.lag_seconds : null);
    var rmax = chart('rate', s, 'events_per_second', start, end);
    var lmax = chart('lag', s, 'lag_seconds', start, end);
    set('rate_max', rmax > 0 ? 'max ' + rate(rmax) : '', rmax);
    set('lag_max', lmax > 0 ? 'max ' + secs(lmax) : '', lmax);
  }

  // chart draws samples[key] over [start, end] into the SVG with id, with
  // a gap where a value is null; it returns the largest value.
  function chart(id, samples, key, start, end) {
    var svg = document.getElementById(id), W = 600, H = 120, pad = 4;
    var max = 0;
    samples.forEach(function (p) { if (p[key] !== null && p[key] > max) max = p[key]; });
    var top = max > 0 ? max * 1.15 : 1;
    var x = function (t) { return ((Date.parse(t) - start) / (end - start)) * W; };
    var y = function (v) { return H - pad - (v / top) * (H - 2 * pad); };
    var parts = [], run = [];
    samples.forEach(function (p) {
      if (p[key] === null) { if (run.length) parts.push(run); run = []; return; }
      run.push([x(p.t), y(p[key])]);
    });
    if (run.length) parts.push(run);
    var html = '';
    [0.25, 0.5, 0.75].forEach(function (g) {
      html += '<line class="grid" x1="0" x2="' + W + '" y1="' + (H * g) + '" y2="' + (H * g) + '"/>';
    });
    parts.forEach(function (pts) {
      var line = pts.map(function (q, i) { return (i ? 'L' : 'M') + q[0].toFixed(1) + ' ' + q[1].toFixed(1); }).join(' ');
      var area = line + ' L' + pts[pts.length - 1][0].toFixed(1) + ' ' + H + ' L' + pts[0][0].toFixed(1) + ' ' + H + ' Z';
      html += '<path class="area" d="' + area + '"/><path class="line" d="' + line + '"/>';
    });
    if (run.length) {
      // The latest point, so that a single sample shows too.
      var q = run[run.length - 1];
      html += '<circle class="dot" cx="' + q[0].toFixed(1) + '" cy="' + q[1].toFixed(1) + '" r="3"/>';
    }
    svg.innerHTML = html;
    return max;
  }

  function renderSettings(settings) {
    var body = document.querySelector('#settings tbody');
    body.textContent = '';
    settings.forEach(function (s) {
      var tr = document.createElement('tr');
      var k = document.createElement('td'), v = document.createElement('td');
      k.textContent = s.env;
      v.textContent = s.value === '' ? '(empty)' : s.value;
      tr.appendChild(k);
      tr.appendChild(v);
      body.appendChild(tr);
    });
  }

  var data = JSON.parse(document.getElementById('data').textContent);
  render(data);
  var every = (data.refresh_seconds || 5) * 1000;

  function refresh() {
    fetch('status.json', { cache: 'no-store' })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(render)
      .catch(function (err) {
        var stale = document.getElementById('stale');
        stale.hidden = false;
        stale.textContent = 'The relay does not answer (' + err.message + '); the figures below are old.';
      })
      .then(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();
