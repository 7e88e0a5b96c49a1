// Draws the run page's, the survey page's and the comparisons' charts (Chart.js) from the JSON the
// server puts beside them (backend/web/figures.py, surveys.py, experiments.py), whenever htmx
// brings new content: on load, and on every live update.
(function () {
  "use strict";

  // Vertical lines at given x values (the mean and the target) over a bar chart.
  const markers = {
    id: "markers",
    afterDatasetsDraw(chart, _args, options) {
      const { ctx, chartArea, scales } = chart;
      for (const marker of options.lines || []) {
        if (marker.value === null || marker.value === undefined) continue;
        const x = scales.x.getPixelForValue(marker.value);
        ctx.save();
        ctx.strokeStyle = marker.color;
        ctx.lineWidth = 2;
        ctx.setLineDash(marker.dash || []);
        ctx.beginPath();
        ctx.moveTo(x, chartArea.top);
        ctx.lineTo(x, chartArea.bottom);
        ctx.stroke();
        ctx.fillStyle = marker.color;
        ctx.fillText(`${marker.label} ${marker.value.toFixed(2)}`, x + 4, chartArea.top + 12 + (marker.row || 0) * 14);
        ctx.restore();
      }
    },
  };

  const MEAN = "#3056d3";
  const TARGET = "#c2410c";
  const BARS = "#9db0ea";

  function bars(canvas, { labels, counts, label, x, lines = [] }) {
    return new Chart(canvas, {
      type: "bar",
      data: { labels, datasets: [{ label, data: counts, backgroundColor: BARS }] },
      options: {
        animation: false,
        responsive: true,
        plugins: { legend: { display: false }, markers: { lines } },
        scales: {
          x: { title: { display: true, text: x }, ticks: { maxTicksLimit: 11 } },
          y: { title: { display: true, text: "agents" }, beginAtZero: true },
        },
      },
      plugins: [markers],
    });
  }

  function overRounds(canvas, rounds, datasets) {
    return new Chart(canvas, {
      type: "line",
      data: {
        labels: rounds,
        datasets: datasets.map(({ color, ...set }) => ({ borderColor: color, backgroundColor: color, ...set })),
      },
      options: {
        animation: false,
        responsive: true,
        // Each line's swatch is a short stretch of line in its colour: the default box, outlined
        // by a dashed 3 px border around a filled square, looked like a scribble.
        plugins: { legend: { labels: { usePointStyle: true, pointStyle: "line", pointStyleWidth: 32 } } },
        scales: { x: { title: { display: true, text: "round" } }, y: { beginAtZero: true } },
      },
    });
  }

  // The paper's figure: one round's answers with the mean and target, and both over the rounds.
  function histogram(canvas, data) {
    return bars(canvas, {
      labels: data.histogram.map((_, i) => i),
      counts: data.histogram,
      label: `answers in round ${data.round}`,
      x: "answer",
      lines: [
        { value: data.mean, label: "mean", color: MEAN },
        { value: data.target, label: "target", color: TARGET, dash: [6, 4], row: 1 },
      ],
    });
  }

  function series(canvas, data) {
    return overRounds(canvas, data.rounds, [
      { label: "mean", data: data.means, color: MEAN },
      { label: "target", data: data.targets, color: TARGET, borderDash: [6, 4] },
    ]);
  }

  // The social network: the stances taken after a round, and how far the news went.
  function stances(canvas, data) {
    return bars(canvas, { labels: data.bins, counts: data.stances, label: `stances after round ${data.round}`, x: "stance" });
  }

  function spread(canvas, data) {
    return overRounds(canvas, data.rounds, [
      { label: "seen", data: data.seen, color: MEAN },
      { label: "adopted", data: data.adopted, color: TARGET },
      { label: "posts and reposts", data: data.posts, color: "#15803d", borderDash: [6, 4] },
    ]);
  }

  // A survey's question: its answers per bin or option, one set of bars per group of agents.
  const GROUPS = [BARS, "#f59e0b", "#15803d", TARGET, "#7c3aed", "#0891b2", MEAN, "#be185d"];

  function survey(canvas, data) {
    return new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: data.sets.map((set, i) => ({ label: set.label, data: set.counts, backgroundColor: GROUPS[i % GROUPS.length] })),
      },
      options: {
        animation: false,
        responsive: true,
        plugins: { legend: { display: data.sets.length > 1 } },
        scales: {
          x: { title: { display: true, text: data.x } },
          y: { title: { display: true, text: "agents" }, beginAtZero: true },
        },
      },
    });
  }

  // Runs compared (an experiment's cells, or runs chosen on the list): per series, its mean per
  // round, its 95 % band (the area between an unlabelled low and high line) and its target dashed.
  function comparison(canvas, data) {
    const datasets = [];
    data.series.forEach((set, i) => {
      const color = GROUPS[(i + 6) % GROUPS.length]; // MEAN first: one line reads as the run page's
      const low = datasets.length;
      const edge = { borderWidth: 0, pointRadius: 0, band: true, spanGaps: true };
      datasets.push({ ...edge, data: set.low, fill: false });
      datasets.push({ ...edge, data: set.high, fill: low, backgroundColor: `${color}33` });
      datasets.push({ label: set.label, data: set.mean, borderColor: color, backgroundColor: color, fill: false });
      if (set.target) {
        datasets.push({ label: `${set.label}: target`, data: set.target, borderColor: color, borderDash: [6, 4], pointRadius: 0, fill: false });
      }
    });
    return new Chart(canvas, {
      type: "line",
      data: { labels: data.rounds, datasets },
      options: {
        animation: false,
        responsive: true,
        // As tall as its figure (myriad.css), not half its width: the legend of many lines would
        // leave a phone's chart no room.
        maintainAspectRatio: false,
        plugins: {
          legend: { labels: { usePointStyle: true, pointStyle: "line", pointStyleWidth: 32, filter: (item, shown) => !shown.datasets[item.datasetIndex].band } },
          tooltip: { filter: (item) => !item.dataset.band },
        },
        scales: { x: { title: { display: true, text: "round" } }, y: { title: { display: true, text: data.measure } } },
      },
    });
  }

  // One small chart of a series' final answers (the comparison's small multiples).
  function final(canvas, data) {
    return bars(canvas, { labels: data.histogram.map((_, i) => i), counts: data.histogram, label: data.label, x: "answer" });
  }

  const DRAW = { histogram, series, stances, spread, survey, comparison, final };

  function draw() {
    // Charts whose canvas a swap removed are destroyed, or Chart.js would keep them forever.
    Object.values(Chart.instances).forEach((chart) => chart.canvas.isConnected || chart.destroy());
    document.querySelectorAll("script.chart-data").forEach((script) => {
      const data = JSON.parse(script.textContent);
      script.parentElement.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
        if (!Chart.getChart(canvas)) DRAW[canvas.dataset.chart](canvas, data);
      });
    });
  }

  // Any swap may bring a chart's canvas and its data as siblings: look over the whole page (only
  // canvases without a chart are drawn).
  document.addEventListener("htmx:load", draw);

  // The live part of a run's page brings the newest round's chart along: a chart showing a round
  // the person chose stays as it is.
  // From the moment the person asks for a round, the chart no longer follows: a live update landing
  // while the request is in flight would replace the form that asked, and htmx would drop its answer.
  document.addEventListener("htmx:beforeRequest", (event) => {
    if (event.detail.elt.matches("#run-chart form")) event.detail.elt.closest("#run-chart").removeAttribute("data-following");
  });
  document.addEventListener("htmx:oobBeforeSwap", (event) => {
    const target = event.detail.target;
    if (target.id === "run-chart" && !target.hasAttribute("data-following")) event.detail.shouldSwap = false;
  });
})();
