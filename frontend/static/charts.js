// Draws the run page's charts (Chart.js) from the JSON the server puts beside them, whenever htmx
// brings new content: on load, and on every live update of the chart.
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

  function histogram(canvas, data) {
    return new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.histogram.map((_, i) => i),
        datasets: [{ label: `answers in round ${data.round}`, data: data.histogram, backgroundColor: "#9db0ea" }],
      },
      options: {
        animation: false,
        responsive: true,
        plugins: {
          legend: { display: false },
          markers: {
            lines: [
              { value: data.mean, label: "mean", color: MEAN },
              { value: data.target, label: "target", color: TARGET, dash: [6, 4], row: 1 },
            ],
          },
        },
        scales: {
          x: { title: { display: true, text: "answer" }, ticks: { maxTicksLimit: 11 } },
          y: { title: { display: true, text: "agents" }, beginAtZero: true },
        },
      },
      plugins: [markers],
    });
  }

  function series(canvas, data) {
    return new Chart(canvas, {
      type: "line",
      data: {
        labels: data.rounds,
        datasets: [
          { label: "mean", data: data.means, borderColor: MEAN, backgroundColor: MEAN },
          { label: "target", data: data.targets, borderColor: TARGET, backgroundColor: TARGET, borderDash: [6, 4] },
        ],
      },
      options: {
        animation: false,
        responsive: true,
        scales: { x: { title: { display: true, text: "round" } }, y: { beginAtZero: true } },
      },
    });
  }

  const DRAW = { histogram, series };

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
})();
